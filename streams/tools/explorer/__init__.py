"""The segment explorer (``segmenter ui``, also started by ``segmenter demo``): segments, their
KPIs and size over time, the behaviour profiles and a user lookup, in the browser.

Needs the ``ui`` extra (Starlette, uvicorn). Server-side HTML with inline SVG drawn by
:mod:`.svg`: nothing is downloaded or built at install time, and no script runs in the page.
"""
