"""Low-resource CTC fine-tuning of EH-MAM encoders on letters (the wav2vec 2.0 / data2vec LibriLight protocol).

`python -m finetune.prepare` writes manifests, `python -m finetune.run` fine-tunes, `python -m finetune.decode`
scores a checkpoint (Viterbi, or a KenLM ARPA model with a lexicon), `python -m finetune.arpa` writes a small ARPA
n-gram model from a text.
"""
