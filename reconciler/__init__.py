"""kafkaform: a Terraform-style reconciler for Apache Kafka + ZooKeeper on VMs and bare metal."""

__version__ = "0.1.0"
