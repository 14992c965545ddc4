"""Corpus sizes per scale. `ci` meets every minimum the s3prl loaders need for tiny runner runs; `demo` is what
`make demo` learns on in minutes; `small` is a few hours for a tiny pretraining and a meaningful mini-SUPERB; `tiny`
is an internal smoke size."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    # LibriSpeech (PR + ASR): (speakers, utterances per speaker) per split, sentences per utterance
    libri_train: tuple[int, int]
    libri_dev: tuple[int, int]
    libri_test: tuple[int, int]
    libri_sentences: tuple[int, int]
    # Speech Commands: speakers whose hashed ids land in train / dev, test-set speakers,
    # filler words per speaker, seconds per _background_noise_ file, test _silence_ clips
    ks_train_speakers: int
    ks_dev_speakers: int
    ks_test_speakers: int
    ks_fillers_per_speaker: int
    ks_noise_seconds: float
    ks_test_silence: int
    # Fluent Speech Commands: (speakers, utterances per speaker) per split; train cycles through the 31
    # intents (all of them from 31 utterances on), valid/test draw from the train intents
    fsc_train: tuple[int, int]
    fsc_valid: tuple[int, int]
    fsc_test: tuple[int, int]
    # VoxCeleb1: speakers, training videos per speaker, utterances per video, sentences per utterance
    vox_speakers: int
    vox_train_videos: int
    vox_utts_per_video: int
    vox_sentences: tuple[int, int]
    # IEMOCAP: per speaker and session, sentences spoken in each of the 4 emotions, extra exc/fru/xxx
    # utterances, and dialogs per session
    er_sentences: int
    er_extra: int
    er_dialogs: int
    # SNIPS: texts per split, each said by every voice of the split (8 train, 4 valid, 4 test voices, as in the
    # real release), and texts per split said by one voice of another split's list (s3prl's filter drops them)
    sf_train: int
    sf_valid: int
    sf_test: int
    sf_distractors: int
    # pretraining audio (8-15 s): train speakers, utterances per speaker, valid speakers
    pt_speakers: int
    pt_utts_per_speaker: int
    pt_valid_speakers: int
    # VoxCeleb1: utterances per speaker in the dev and the test video (1 each in the real-sized layout;
    # more make a test set big enough for a narrow accuracy interval without more speakers)
    vox_eval_utts: tuple[int, int] = (1, 1)
    # CTC fine-tuning (minisuperb/finetuning.py): (speakers, utterances per speaker) in each 1h fold's clean and
    # other half, in each 9h half, and in LibriSpeech dev-other and test-other; LM text sentences
    ft_fold: tuple[int, int] = (1, 2)
    ft_9h: tuple[int, int] = (1, 3)
    libri_other: tuple[int, int] = (2, 3)
    lm_sentences: int = 200
    # LibriSpeech dev-clean taken utterance for utterance from another scale (its libri_dev and libri_sentences):
    # the phone ABX measured on dev-clean (results.abx, the pretraining monitor) then uses that scale's items
    libri_dev_from: str | None = None
    # SNIPS valid/test voices. polly: each with its own espeak variant and the accent of the Polly voice it is
    # named after (British, Indian, Australian), as unlike the American training voices as the real ones.
    # train_variants: American, on the training voices' espeak variants with their own pitch, vocal-tract factor
    # and tilt: eight training voices do not carry FBANK across espeak accents and formant sets at CPU budgets
    # (downstream_configs/profiles/cpu.yaml, SF)
    sf_voices: str = "polly"


SCALES: dict[str, Scale] = {
    "ci": Scale(
        libri_train=(3, 8),
        libri_dev=(2, 3),
        libri_test=(2, 3),
        libri_sentences=(1, 2),
        ks_train_speakers=3,
        ks_dev_speakers=1,
        ks_test_speakers=2,
        ks_fillers_per_speaker=3,
        ks_noise_seconds=3.0,
        ks_test_silence=3,
        fsc_train=(3, 11),
        fsc_valid=(2, 4),
        fsc_test=(2, 4),
        vox_speakers=8,
        vox_train_videos=1,
        vox_utts_per_video=2,
        vox_sentences=(1, 2),
        er_sentences=2,
        er_extra=1,
        er_dialogs=2,
        sf_train=4,
        sf_valid=2,
        sf_test=2,
        sf_distractors=1,
        pt_speakers=4,
        pt_utts_per_speaker=2,
        pt_valid_speakers=1,
    ),
    "small": Scale(
        libri_train=(40, 15),
        libri_dev=(8, 10),
        libri_test=(8, 10),
        libri_sentences=(1, 3),
        ks_train_speakers=50,
        ks_dev_speakers=8,
        ks_test_speakers=10,
        ks_fillers_per_speaker=8,
        ks_noise_seconds=60.0,
        ks_test_silence=20,
        fsc_train=(16, 31),
        fsc_valid=(4, 20),
        fsc_test=(4, 20),
        vox_speakers=40,
        vox_train_videos=3,
        vox_utts_per_video=3,
        vox_sentences=(2, 3),
        er_sentences=10,
        er_extra=4,
        er_dialogs=4,
        sf_train=300,
        sf_valid=50,
        sf_test=50,
        sf_distractors=10,
        sf_voices="train_variants",
        pt_speakers=50,
        pt_utts_per_speaker=10,
        pt_valid_speakers=2,
        ft_fold=(2, 5),
        ft_9h=(8, 10),
        libri_other=(8, 10),
        lm_sentences=5000,
    ),
    # `make demo`: learnable on a 2-core CPU in minutes. Test sets of 260-290 utterances for KS, IC, SID and
    # ER (pooled over the five folds) keep every 95 % Wilson interval within +-6 points even at 50 %
    # accuracy; training sets only as large as the cpu profiles (downstream_configs/profiles/) can use; `small`'s
    # dev-clean (8 speakers x 10 utterances of 1-3 sentences), so that the demo's phone ABX is measured on the
    # items of the recipe search (results/recipe_search/).
    "demo": Scale(
        libri_train=(24, 20),
        libri_dev=(8, 10),
        libri_test=(8, 12),
        libri_sentences=(1, 1),
        ks_train_speakers=30,
        ks_dev_speakers=3,
        ks_test_speakers=20,
        ks_fillers_per_speaker=3,
        ks_noise_seconds=20.0,
        ks_test_silence=20,
        fsc_train=(20, 31),
        fsc_valid=(2, 15),
        fsc_test=(10, 27),
        vox_speakers=20,
        vox_train_videos=2,
        vox_utts_per_video=4,
        vox_sentences=(1, 1),
        er_sentences=7,
        er_extra=1,
        er_dialogs=2,
        sf_train=300,
        sf_valid=20,
        sf_test=60,
        sf_distractors=2,
        sf_voices="train_variants",
        pt_speakers=24,
        pt_utts_per_speaker=6,
        pt_valid_speakers=1,
        vox_eval_utts=(2, 14),
        libri_dev_from="small",
        ft_fold=(1, 4),
        ft_9h=(4, 8),
        libri_other=(3, 6),
        lm_sentences=2000,
    ),
    # internal: the smallest trees the writers accept (determinism checks)
    "tiny": Scale(
        libri_train=(2, 2),
        libri_dev=(1, 2),
        libri_test=(1, 2),
        libri_sentences=(1, 1),
        ks_train_speakers=1,
        ks_dev_speakers=0,
        ks_test_speakers=1,
        ks_fillers_per_speaker=1,
        ks_noise_seconds=1.5,
        ks_test_silence=1,
        fsc_train=(1, 4),
        fsc_valid=(1, 2),
        fsc_test=(1, 2),
        vox_speakers=2,
        vox_train_videos=1,
        vox_utts_per_video=1,
        vox_sentences=(1, 1),
        er_sentences=1,
        er_extra=0,
        er_dialogs=1,
        sf_train=3,
        sf_valid=1,
        sf_test=1,
        sf_distractors=1,
        pt_speakers=1,
        pt_utts_per_speaker=1,
        pt_valid_speakers=1,
        ft_fold=(1, 1),
        ft_9h=(1, 1),
        libri_other=(1, 1),
        lm_sentences=20,
    ),
}
