"""Repository tooling (not installed): regenerating the generated blocks of README.md and proofs/."""
