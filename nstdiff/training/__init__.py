"""Training jobs (decoders now; LoRAs later), run with accelerate so `accelerate launch` scales them out."""
