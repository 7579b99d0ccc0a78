"""Data: the dataset container, emotion vocabulary, loaders per source format, faces, landmarks, regions, splits,
synthetic faces."""
