"""Layer 3: latent track → video (directions, NADA stylization, rendering, paste-back, export). No Qt, no studio imports."""
