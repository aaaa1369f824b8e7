"""Sub-commands of `monitor`, one module per area; each exposes `register(subparsers)`."""
