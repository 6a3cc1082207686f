"""Extensions beyond images (audio, mesh): each registers its method, CLI command and app tab through the core's
entry-point groups (see `nstdiff.registry`)."""
