"""The child floor: the only code that pins a device and imports Keras or a framework, and only after pinning.

Its entry is `python -m kerasmnist.child FOLDER` (`__main__.py`), which a launch-side parent starts through
`kerasmnist.launch.processes.spawn`; `kerasmnist train` runs `run.run_and_record` in its own process.
"""
