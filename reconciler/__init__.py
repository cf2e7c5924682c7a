"""kafkaform: a Terraform-style reconciler for Apache Kafka + ZooKeeper on VMs and bare metal."""

import os

__version__ = "0.1.0"

# No pydantic plugins: third-party code installed beside kafkaform would otherwise be handed every
# spec and plan it validates, and looking them up scans every installed package's entry points
# (≈ 10 ms of each command's start-up). An explicit setting is left alone.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
