"""`amqpctl`: rabbitmqctl-style commands against amqpd's management API (or RabbitMQ's)."""
