"""The launch floor: what to run, where and in which order (CLI commands call it). It never imports Keras or a
framework: every pinned process is started through `processes.spawn`.
"""
