"""The nstdiff web app (Gradio). It talks to the core only through `nstdiff.executor.Executor` and never imports
torch, so the same app can sit in front of an in-process or a remote engine."""
