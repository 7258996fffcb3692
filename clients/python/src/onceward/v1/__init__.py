"""Generated from proto/onceward/v1/onceward.proto by scripts/generate.sh; do not edit."""
