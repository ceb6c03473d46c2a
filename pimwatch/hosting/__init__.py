"""The hosts: the batch driver, the Azure Functions runtime, the Event Hub consumer, the app
settings and the heartbeat."""
