// A tiny reference Kafka client on the Java kafka-clients jar that `ksock-kafka fetch` already
// caches.  Why it exists: Debian 12's kcat links librdkafka 2.0.2, whose SCRAM client-final
// message repeats the client nonce; Kafka 4.x checks the nonce strictly (RFC 5802) and rejects
// it (fixed in librdkafka 2.6.1).  The Java client is Kafka's own, so it is the reference for
// SCRAM round trips and a second opinion next to kcat for anything else.
//
// Run through `ksock-kafka client ...` (compiles this file once into the cache).  Options follow
// kcat where they can, so a test passes the same -X settings to either tool:
//
//   metadata -b BOOTSTRAP [-X k=v]...                         prints the broker ids
//   produce  -b BOOTSTRAP -t TOPIC [-K DELIM] [-H name=value]... [-X k=v]...   lines from stdin
//   consume  -b BOOTSTRAP -t TOPIC -c COUNT [-T SECONDS] [-X k=v]...
//            prints key|value|name=value,... per record, from the beginning of every partition
//
// librdkafka-style -X keys that are translated: sasl.mechanisms, sasl.username, sasl.password,
// ssl.ca.location (a PEM file), ssl.endpoint.identification.algorithm=none.  Any other -X key
// is passed to the Java client unchanged.  Exit status 0 on success, 1 on any failure.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class KsockClient {
    private static void usage() {
        System.err.println("usage: KsockClient metadata|produce|consume -b BOOTSTRAP [-t TOPIC] "
                + "[-c COUNT] [-T SECONDS] [-K DELIM] [-H name=value]... [-X key=value]...");
        System.exit(2);
    }

    public static void main(String[] args) {
        if (args.length < 1) usage();
        String cmd = args[0];
        String bootstrap = null, topic = null, delim = null;
        int count = -1;
        long timeoutSec = 20;
        List<String[]> headers = new ArrayList<>();
        List<String[]> xs = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) usage();
            String v = args[++i];
            switch (a) {
                case "-b": bootstrap = v; break;
                case "-t": topic = v; break;
                case "-c": count = Integer.parseInt(v); break;
                case "-T": timeoutSec = Long.parseLong(v); break;
                case "-K": delim = v; break;
                case "-H": headers.add(v.split("=", 2)); break;
                case "-X": xs.add(v.split("=", 2)); break;
                default: usage();
            }
        }
        if (bootstrap == null) usage();
        Properties p = clientProps(bootstrap, xs, timeoutSec);
        try {
            switch (cmd) {
                case "metadata": metadata(p, timeoutSec); break;
                case "produce":
                    if (topic == null) usage();
                    produce(p, topic, delim, headers);
                    break;
                case "consume":
                    if (topic == null || count < 0) usage();
                    consume(p, topic, count, timeoutSec);
                    break;
                default: usage();
            }
        } catch (Exception e) {
            Throwable root = e;
            while (root.getCause() != null && root.getCause() != root) root = root.getCause();
            System.err.println("KsockClient " + cmd + " failed: " + root.getClass().getSimpleName()
                    + ": " + root.getMessage());
            System.exit(1);
        }
        System.exit(0);
    }

    // Translate kcat/librdkafka-style settings and bound every wait, so that a failing
    // check (wrong password, untrusted CA) fails in seconds instead of retrying for minutes.
    static Properties clientProps(String bootstrap, List<String[]> xs, long timeoutSec) {
        Properties p = new Properties();
        String ms = Long.toString(timeoutSec * 1000);
        p.put("bootstrap.servers", bootstrap);
        p.put("request.timeout.ms", ms);
        p.put("default.api.timeout.ms", ms);
        p.put("max.block.ms", ms);
        p.put("delivery.timeout.ms", ms);
        p.put("linger.ms", "0");
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        String mech = null, user = null, pass = null;
        for (String[] kv : xs) {
            if (kv.length != 2) throw new IllegalArgumentException("-X expects key=value");
            String k = kv[0], v = kv[1];
            switch (k) {
                case "sasl.mechanisms": case "sasl.mechanism": mech = v; break;
                case "sasl.username": user = v; break;
                case "sasl.password": pass = v; break;
                case "ssl.ca.location":
                    p.put("ssl.truststore.type", "PEM");
                    p.put("ssl.truststore.location", v);
                    break;
                case "ssl.endpoint.identification.algorithm":
                    p.put(k, v.equals("none") ? "" : v);
                    break;
                default: p.put(k, v);
            }
        }
        if (mech != null) {
            p.put("sasl.mechanism", mech);
            String module = mech.equals("PLAIN")
                    ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                    : "org.apache.kafka.common.security.scram.ScramLoginModule";
            if (user != null && pass != null) {
                p.put("sasl.jaas.config", module + " required username=\"" + user
                        + "\" password=\"" + pass + "\";");
            }
        }
        return p;
    }

    static void metadata(Properties p, long timeoutSec) throws Exception {
        try (Admin admin = Admin.create(p)) {
            TreeSet<Integer> ids = new TreeSet<>();
            for (Node n : admin.describeCluster().nodes().get()) ids.add(n.id());
            StringBuilder sb = new StringBuilder();
            for (int id : ids) sb.append(sb.length() == 0 ? "" : ",").append(id);
            System.out.println("brokers: " + sb);
        }
    }

    static void produce(Properties p, String topic, String delim, List<String[]> headers)
            throws Exception {
        List<Future<RecordMetadata>> sent = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer =
                     new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            BufferedReader in = new BufferedReader(
                    new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null) {
                byte[] key = null;
                String value = line;
                if (delim != null) {
                    int at = line.indexOf(delim);
                    if (at >= 0) {
                        key = line.substring(0, at).getBytes(StandardCharsets.UTF_8);
                        value = line.substring(at + delim.length());
                    }
                }
                ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(topic, key,
                        value.getBytes(StandardCharsets.UTF_8));
                for (String[] h : headers) {
                    r.headers().add(h[0], h.length > 1 ? h[1].getBytes(StandardCharsets.UTF_8) : null);
                }
                sent.add(producer.send(r));
            }
            producer.flush();
            for (Future<RecordMetadata> f : sent) f.get();  // surfaces any delivery error
        }
        System.err.println("produced " + sent.size() + " records to " + topic);
    }

    static void consume(Properties p, String topic, int count, long timeoutSec) throws Exception {
        // No consumer group: assign every partition and read from the beginning, like kcat -C.
        try (KafkaConsumer<byte[], byte[]> consumer =
                     new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            List<PartitionInfo> parts = consumer.partitionsFor(topic);
            if (parts == null || parts.isEmpty()) throw new IllegalStateException("no partitions for " + topic);
            for (PartitionInfo pi : parts) tps.add(new TopicPartition(topic, pi.partition()));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = System.nanoTime() + timeoutSec * 1_000_000_000L;
            int got = 0;
            while (got < count && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    StringBuilder hs = new StringBuilder();
                    for (Header h : r.headers()) {
                        hs.append(hs.length() == 0 ? "" : ",").append(h.key()).append('=')
                                .append(h.value() == null ? "" : new String(h.value(), StandardCharsets.UTF_8));
                    }
                    System.out.println(str(r.key()) + "|" + str(r.value()) + "|" + hs);
                    if (++got >= count) break;
                }
            }
            System.out.flush();
            if (got < count) {
                throw new IllegalStateException("consumed " + got + " of " + count + " records within "
                        + timeoutSec + " s");
            }
        }
    }

    private static String str(byte[] b) {
        return b == null ? "" : new String(b, StandardCharsets.UTF_8);
    }
}
