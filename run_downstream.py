"""Run a SUPERB task with s3prl 0.4.18's own downstream runner, on current torch/torchaudio.

    python run_downstream.py -m train -u ehmam -k <checkpoint> -d pr --data-root DIR
    python run_downstream.py -m evaluate -e result/downstream/ehmam_pr/dev-best.ckpt

Adds to s3prl's flags (which all pass through): SUPERB task names `-d pr|ks|ic|sid|er|asr|sf` with
our configs, `--data-root DIR` (or $SUPERB_DATA), `--workers N`, `--fold K`; see superb/entry.py.
"""

from superb.entry import main

if __name__ == "__main__":
    main()
