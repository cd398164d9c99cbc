"""Development and operator tools: simulate, replay, demo, bench, quality, explore; a production
worker imports none of them."""
