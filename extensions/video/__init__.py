"""Video extension: clips stylized frame by frame, held steady along the optical flow."""
