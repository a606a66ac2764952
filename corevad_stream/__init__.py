"""corevad_stream: the asyncio runtime that turns camera feeds into MQTT anomaly alerts."""
