"""Image sources (bundled photos, folders, file lists), robust decoding and augmentation."""
