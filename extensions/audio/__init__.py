"""Audio extension: spectrogram style transfer for sound clips."""
