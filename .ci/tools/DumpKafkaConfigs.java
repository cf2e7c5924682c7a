// Prints, as JSON, the broker config names a Kafka version knows and which of them are dynamically
// updatable (per-broker or cluster-wide) and which hold secrets (type PASSWORD), read from the real jars. Run via tools/dump_kafka_configs.sh.
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

public class DumpKafkaConfigs {
    public static void main(String[] args) {
        String version = org.apache.kafka.common.utils.AppInfoParser.getVersion();
        TreeSet<String> all = new TreeSet<>(kafka.server.KafkaConfig.configDef().names());
        TreeMap<String, String> modes = new TreeMap<>(kafka.server.DynamicBrokerConfig$.MODULE$.dynamicConfigUpdateModes());
        TreeSet<String> passwords = new TreeSet<>();
        for (org.apache.kafka.common.config.ConfigDef.ConfigKey k : kafka.server.KafkaConfig.configDef().configKeys().values()) {
            if (k.type == org.apache.kafka.common.config.ConfigDef.Type.PASSWORD) passwords.add(k.name);
        }
        StringBuilder out = new StringBuilder();
        out.append("{\n  \"version\": ").append(q(version)).append(",\n");
        out.append("  \"broker_configs\": [");
        join(out, all);
        out.append("],\n  \"password_configs\": [");
        join(out, passwords);
        out.append("],\n  \"dynamic_broker_configs\": [");
        join(out, modes.keySet());
        out.append("],\n  \"dynamic_update_modes\": {");
        String sep = "\n    ";
        for (Map.Entry<String, String> e : modes.entrySet()) {
            out.append(sep).append(q(e.getKey())).append(": ").append(q(e.getValue()));
            sep = ",\n    ";
        }
        out.append("\n  }\n}\n");
        System.out.print(out);
    }

    private static void join(StringBuilder out, Iterable<String> names) {
        String sep = "\n    ";
        for (String n : names) {
            out.append(sep).append(q(n));
            sep = ",\n    ";
        }
        out.append("\n  ");
    }

    private static String q(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }
}
