"""Security: the spec's `security` section, its checks, secrets (never shown), the cluster CA and
certificates, and the Kafka settings they turn into. See the README's "Security" section."""
