"""The pure core: the lifecycle, the state machine, the retry schedule, dead-letter records and the
counters. Nothing here imports Faust, aiokafka, mode, aiohttp or a Kafka client
(tests/unit/test_imports.py), so it is tested in milliseconds and reads without the engine.
"""
