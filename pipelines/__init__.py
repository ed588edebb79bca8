"""The stages: one module per `mer` command, thin orchestration over ``components``."""
