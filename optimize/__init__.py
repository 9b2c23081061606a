"""Layer 2: driving video → latent track (P/P+ optimization, keypoints, losses). No Qt, no editing/studio imports."""
