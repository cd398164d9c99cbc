"""Development and operator tools: simulate, replay, demo, bench, quality, explore; not imported by a production worker."""
