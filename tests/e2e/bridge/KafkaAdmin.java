// Kafka admin operations the Python tests' clients lack (confluent-kafka 2.3 has no
// delete_records), through Kafka's own Java Admin client from the broker's jars. Run as a
// single-file program (no build step):
//
//   java -cp "$KAFKA_LIBS/*" KafkaAdmin.java delete-records BOOTSTRAP TOPIC PARTITION BEFORE
//
// delete-records moves the partition's log start offset to BEFORE (Kafka's DeleteRecords), as
// retention would. Exit 0 when the broker confirms the new low watermark.
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.common.TopicPartition;

public class KafkaAdmin {
    public static void main(String[] args) throws Exception {
        if (args.length != 5 || !args[0].equals("delete-records")) {
            System.err.println("usage: KafkaAdmin delete-records BOOTSTRAP TOPIC PARTITION BEFORE");
            System.exit(2);
        }
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        try (Admin a = Admin.create(p)) {
            TopicPartition tp = new TopicPartition(args[2], Integer.parseInt(args[3]));
            long before = Long.parseLong(args[4]);
            long low = a.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(before)))
                           .lowWatermarks().get(tp).get(60, TimeUnit.SECONDS).lowWatermark();
            System.out.println(tp + " low watermark " + low);
            System.exit(low == before ? 0 : 1);
        }
    }
}
