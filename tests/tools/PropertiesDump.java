// Reads each properties file named on the command line with java.util.Properties.load(InputStream),
// exactly as Kafka and ZooKeeper read theirs, and prints one JSON object per file: {key: value}.
// Every character outside printable ASCII is written as a JSON unicode escape: the output is ASCII.
// Run as `java tests/tools/PropertiesDump.java FILE...` (a JDK runs a single source file).
import java.io.FileInputStream;
import java.io.InputStream;
import java.util.Properties;
import java.util.TreeMap;

public class PropertiesDump {
    public static void main(String[] args) throws Exception {
        for (String path : args) {
            Properties p = new Properties();
            try (InputStream in = new FileInputStream(path)) {
                p.load(in);
            }
            TreeMap<String, String> sorted = new TreeMap<>();
            for (String k : p.stringPropertyNames()) sorted.put(k, p.getProperty(k));
            StringBuilder out = new StringBuilder("{");
            String sep = "";
            for (var e : sorted.entrySet()) {
                out.append(sep).append(q(e.getKey())).append(":").append(q(e.getValue()));
                sep = ",";
            }
            System.out.println(out.append("}"));
        }
    }

    private static String q(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\').append(c);
            else if (c >= 0x20 && c < 0x7f) b.append(c);
            else b.append(String.format("\\u%04x", (int) c));
        }
        return b.append('"').toString();
    }
}
