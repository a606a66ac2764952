"""The configs users copy and edit (example cameras, the demo, the replay protocols, the systemd unit).

Installed as the package corevad_stream.configs (pyproject.toml maps it onto this folder), so a wheel carries
these files; code finds them with corevad_stream.config.shipped_config(name).
"""
