"""Named entities: pretrained, gazetteer and project-trained span sources, combined by weak supervision.

- `tokens`: words with character offsets, and spans <-> per-word labels (IO scheme);
- `pretrained`: a spaCy pipeline (or a Hugging Face token-classification model) mapped to the
  config's labels;
- `gazetteer`: entity lists matched with spaCy's `PhraseMatcher`, from files and from the
  project's own spans;
- `tagger`: a token-classification head over the local encoder, trained on the project's spans;
- `weak_supervision`: skweak's aggregators over those sources, and each source's measured precision;
- `label_issues`: out-of-fold token probabilities, Cleanlab's token-classification checks, consensus;
- `prelabeler`: what serves a project (the sources and their aggregation) and what training stores.
"""
