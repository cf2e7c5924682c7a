// Prints, as JSON, the broker config names a Kafka version knows and which of them are dynamically
// updatable (per-broker or cluster-wide) and which hold secrets (type PASSWORD), read from the real jars. Run via tools/dump_kafka_configs.sh.
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

public class DumpKafkaConfigs {
    public static void main(String[] args) throws Exception {
        // The classes moved between releases (3.x: Scala objects in kafka.server; 4.x: Java classes
        // in org.apache.kafka.server.config), so they are looked up by name, newest first.
        String version = (String) call(null, "getVersion",
                "org.apache.kafka.common.utils.internals.AppInfoParser", "org.apache.kafka.common.utils.AppInfoParser");
        org.apache.kafka.common.config.ConfigDef def = (org.apache.kafka.common.config.ConfigDef)
                call(null, "configDef", "kafka.server.KafkaConfig");
        @SuppressWarnings("unchecked")
        Map<String, String> rawModes = (Map<String, String>) call(null, "dynamicConfigUpdateModes",
                "org.apache.kafka.server.config.DynamicBrokerConfig", "kafka.server.DynamicBrokerConfig$");
        TreeSet<String> all = new TreeSet<>(def.names());
        TreeMap<String, String> modes = new TreeMap<>(rawModes);
        TreeSet<String> passwords = new TreeSet<>();
        for (org.apache.kafka.common.config.ConfigDef.ConfigKey k : def.configKeys().values()) {
            if (k.type == org.apache.kafka.common.config.ConfigDef.Type.PASSWORD) passwords.add(k.name);
        }
        // The metadata.version this release formats new clusters with (and upgrades finalize to).
        Object mv = call(null, "latestProduction", "org.apache.kafka.server.common.MetadataVersion");
        short level = (Short) mv.getClass().getMethod("featureLevel").invoke(mv);
        String mvName = (String) mv.getClass().getMethod("version").invoke(mv);
        StringBuilder out = new StringBuilder();
        out.append("{\n  \"version\": ").append(q(version)).append(",\n");
        out.append("  \"metadata_version\": {\"level\": ").append(level).append(", \"name\": ").append(q(mvName))
           .append("},\n");
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

    /** The first of `classes` that has a no-argument `method`: a static one, or the Scala object's. */
    private static Object call(Object unused, String method, String... classes) throws Exception {
        for (String name : classes) {
            Class<?> c;
            try {
                c = Class.forName(name);
            } catch (ClassNotFoundException e) {
                continue;
            }
            java.lang.reflect.Method m;
            try {
                m = c.getMethod(method);
            } catch (NoSuchMethodException e) {
                continue;
            }
            Object target = java.lang.reflect.Modifier.isStatic(m.getModifiers()) ? null : c.getField("MODULE$").get(null);
            return m.invoke(target);
        }
        throw new IllegalStateException("none of " + String.join(", ", classes) + " has " + method + "()");
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
