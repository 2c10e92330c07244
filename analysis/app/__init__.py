"""The application: the pipeline (config schema, resumable runner, stages), the step drivers its stages
and the CLI verbs share (identify, stability, probe, report, summary), and the one CLI
``python -m analysis <verb>``. Imports every layer below it; nothing imports it but the CLI.
"""
