package orderflow.peers;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * Kafka Streams doing orderflow's per-order work: the Java peer of bench/peers/run.py.
 *
 * <p>The same work as the Quix Streams peer (bench/peers/quix_app.py), written again in Java from
 * orderflow's contract: decode and validate each event (schemas/envelope.py's rules), load its order
 * from a RocksDB key-value store with a changelog (Kafka Streams' default persistent store, one per
 * input partition, so an order lives in its client's partition; cached, so an order is written once
 * per commit), drop a duplicate by event id,
 * apply, park or reject it by the default lifecycle (streams/core/lifecycle.py), release parked
 * events the order can now take, keep its history, and write the order back; Kafka Streams commits
 * at its commit interval (500 ms, as the other peers). A transition with effects calls
 * {@code POST {PEERS_EFFECTS_URL}/{effect}} with an Idempotency-Key, synchronously. Dead letters go
 * to PEERS_DLQ_TOPIC.
 *
 * <p>Configured by environment: KAFKA_BOOTSTRAP, PEERS_GROUP (the application id), PEERS_TOPIC,
 * PEERS_DLQ_TOPIC, PEERS_STATE_DIR, PEERS_EFFECTS_URL (optional). Stops on SIGTERM.
 */
public final class OrdersApp {
  // strict as orderflow's reader: NaN and Infinity are refused by Jackson's defaults, trailing text here
  static final ObjectMapper MAPPER = new ObjectMapper()
      .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
  static final JsonNodeFactory NODES = JsonNodeFactory.instance;

  private OrdersApp() {}

  public static void main(String[] args) throws InterruptedException {
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, env("PEERS_GROUP"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, env("KAFKA_BOOTSTRAP"));
    props.put(StreamsConfig.STATE_DIR_CONFIG, env("PEERS_STATE_DIR"));
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 500);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    String effectsUrl = System.getenv().getOrDefault("PEERS_EFFECTS_URL", "").replaceAll("/+$", "");

    StreamsBuilder builder = new StreamsBuilder();
    // cached, as the DSL's stores are by default: an order written by several events between two
    // commits goes to RocksDB and its changelog once
    builder.addStateStore(Stores.keyValueStoreBuilder(
        Stores.persistentKeyValueStore("orders"), Serdes.String(), Serdes.String()).withCachingEnabled());
    builder.stream(env("PEERS_TOPIC"), Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
        .process(() -> new OrderProcessor(effectsUrl), "orders")
        .to(env("PEERS_DLQ_TOPIC"), Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(20));
      stopped.countDown();
    }));
    streams.setUncaughtExceptionHandler(error -> {
      System.err.println("kafka streams peer: " + error);
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
          .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.start();
    stopped.await();
  }

  static String env(String name) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      throw new IllegalArgumentException(name + " must be set");
    }
    return value;
  }

  /** One event at a time: decode, classify, apply or park or reject, write the order back. */
  static final class OrderProcessor implements Processor<byte[], byte[], byte[], byte[]> {
    private final String effectsUrl;
    private final HttpClient http = HttpClient.newHttpClient();
    private ProcessorContext<byte[], byte[]> context;
    private KeyValueStore<String, String> store;

    OrderProcessor(String effectsUrl) {
      this.effectsUrl = effectsUrl;
    }

    @Override
    public void init(ProcessorContext<byte[], byte[]> context) {
      this.context = context;
      this.store = context.getStateStore("orders");
    }

    @Override
    public void process(Record<byte[], byte[]> record) {
      byte[] value = record.value() == null ? new byte[0] : record.value();
      ObjectNode event;
      try {
        event = Envelope.decode(value);
      } catch (Envelope.Invalid invalid) {
        deadLetter(record, value, "invalid_event", invalid.getMessage());
        return;
      }
      double now = System.currentTimeMillis() / 1000.0;
      String key = "o:" + event.get("order_id").asText();
      String stored = store.get(key);
      ObjectNode order = stored == null ? Machine.newOrder(event, now) : readOrder(stored);
      Lifecycle.Row row = Lifecycle.step(order, event);
      Machine.Verdict verdict = Machine.classify(order, event, row);
      switch (verdict) {
        case DUPLICATE:
          return;
        case APPLY:
          callEffects(event, row);
          order = Machine.apply(order, event, row, now);
          order = releaseParked(record, order, now);
          break;
        case PARK:
          order = Machine.park(order, event, now);
          break;
        case REJECT:
          order = Machine.reject(order, event, now, "impossible");
          deadLetter(record, value, "rejected", "impossible");
          break;
        default:
          deadLetter(record, value, "park_full", "park full");
          return;
      }
      store.put(key, order.toString());
    }

    private ObjectNode releaseParked(Record<byte[], byte[]> record, ObjectNode order, double now) {
      while (true) {
        Machine.Taken taken = Machine.takeParked(order);
        if (taken == null) {
          return order;
        }
        ObjectNode parked = (ObjectNode) taken.entry.get("event");
        Lifecycle.Row row = Lifecycle.step(taken.order, parked);
        if (taken.verdict == Machine.Verdict.APPLY && row != null) {
          callEffects(parked, row);
          order = Machine.apply(taken.order, parked, row, now);
        } else {
          order = Machine.reject(taken.order, parked, now, "impossible");
          deadLetter(record, parked.toString().getBytes(StandardCharsets.UTF_8), "rejected", "impossible");
        }
      }
    }

    private void callEffects(ObjectNode event, Lifecycle.Row row) {
      if (effectsUrl.isEmpty()) {
        return;
      }
      for (String effect : row.effects) {
        ObjectNode body = NODES.objectNode();
        for (String field : List.of("order_id", "client_id", "event_id", "type")) {
          body.set(field, event.get(field));
        }
        HttpRequest request = HttpRequest.newBuilder(URI.create(effectsUrl + "/" + effect))
            .timeout(Duration.ofSeconds(10))
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", event.get("event_id").asText())
            .POST(HttpRequest.BodyPublishers.ofString(body.toString()))
            .build();
        try {
          HttpResponse<Void> answer = http.send(request, HttpResponse.BodyHandlers.discarding());
          if (answer.statusCode() >= 300) {
            throw new IllegalStateException(effect + " answered " + answer.statusCode());
          }
        } catch (java.io.IOException error) {
          throw new IllegalStateException(effect + " failed: " + error, error);
        } catch (InterruptedException error) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException(effect + " interrupted", error);
        }
      }
    }

    private void deadLetter(Record<byte[], byte[]> record, byte[] value, String kind, String reason) {
      ObjectNode letter = NODES.objectNode();
      letter.put("kind", kind);
      letter.put("reason", reason);
      letter.put("original", new String(value, StandardCharsets.UTF_8));
      context.forward(record.<byte[]>withKey(null).withValue(letter.toString().getBytes(StandardCharsets.UTF_8)));
    }

    private static ObjectNode readOrder(String stored) {
      try {
        return (ObjectNode) MAPPER.readTree(stored);
      } catch (java.io.IOException error) {
        throw new IllegalStateException("an order record is not JSON: " + error, error);
      }
    }
  }

  /** schemas/envelope.py's rules for an event. */
  static final class Envelope {
    static final int MAX_EVENT_BYTES = 32_768;
    static final int MAX_ID = 128;
    static final int SCHEMA_VERSION = 1;
    static final List<String> ID_FIELDS = List.of("event_id", "order_id", "client_id");
    static final List<String> REQUIRED =
        List.of("event_id", "order_id", "client_id", "type", "occurred_at", "schema_version");
    static final Pattern RFC3339 = Pattern.compile(
        "\\d{4}-\\d{2}-\\d{2}[Tt ]\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?([Zz]|[+-]\\d{2}:\\d{2})");

    static final class Invalid extends Exception {
      Invalid(String message) {
        super(message);
      }
    }

    static ObjectNode decode(byte[] raw) throws Invalid {
      if (raw.length > MAX_EVENT_BYTES) {
        throw new Invalid("the message is " + raw.length + " bytes; at most " + MAX_EVENT_BYTES + " are accepted");
      }
      JsonNode parsed;
      try {
        parsed = MAPPER.readTree(raw);
      } catch (java.io.IOException error) {
        throw new Invalid("not valid JSON: " + error.getMessage().split("\n")[0]);
      }
      if (parsed == null || !parsed.isObject()) {
        throw new Invalid("an event must be a JSON object");
      }
      ObjectNode event = (ObjectNode) parsed;
      for (String name : REQUIRED) {
        if (!event.has(name)) {
          throw new Invalid("field `" + name + "` is missing");
        }
      }
      for (String name : ID_FIELDS) {
        JsonNode id = event.get(name);
        if (!id.isTextual() || id.asText().isEmpty() || id.asText().length() > MAX_ID
            || id.asText().chars().anyMatch(Character::isISOControl)) {
          throw new Invalid("field `" + name + "` must be 1 to " + MAX_ID + " characters, none of them a control character");
        }
      }
      JsonNode type = event.get("type");
      if (!type.isTextual() || !Lifecycle.EVENT_TYPES.contains(type.asText())) {
        throw new Invalid("field `type` must be one of " + Lifecycle.EVENT_TYPES);
      }
      if (!isRfc3339(event.get("occurred_at"))) {
        throw new Invalid("field `occurred_at` must be an RFC 3339 timestamp like 2026-01-31T12:00:00Z");
      }
      JsonNode payload = event.get("payload");
      if (payload != null && !payload.isNull() && !payload.isObject()) {
        throw new Invalid("field `payload` must be a JSON object");
      }
      JsonNode version = event.get("schema_version");
      if (!version.isIntegralNumber() || version.asLong() != SCHEMA_VERSION) {
        throw new Invalid("field `schema_version` must be the integer " + SCHEMA_VERSION);
      }
      return event;
    }

    static boolean isRfc3339(JsonNode value) {
      if (!value.isTextual() || !RFC3339.matcher(value.asText()).matches()) {
        return false;
      }
      try {
        OffsetDateTime.parse(value.asText().replace('z', 'Z').replace('t', 'T').replace(' ', 'T'));
        return true;
      } catch (DateTimeParseException error) {
        return false;
      }
    }
  }

  /** streams/core/lifecycle.py's default lifecycle: its transitions and what can still come. */
  static final class Lifecycle {
    record Row(String target, List<String> effects) {}

    static final Map<String, Row> STEPS = new HashMap<>();
    static final Set<String> EVENT_TYPES = new HashSet<>();
    static final Map<String, List<String>> NEXT = new HashMap<>();

    static {
      add(null, "created", "created");
      add("created", "accepted", "accepted");
      add("created", "paid", "paid", "shipments");
      add("accepted", "paid", "paid", "shipments");
      add("paid", "shipped", "shipped");
      add("shipped", "delivered", "delivered");
      add("created", "cancelled", "cancelled");
      add("accepted", "cancelled", "cancelled");
      add("paid", "cancelled", "cancelled", "refunds");
    }

    private static void add(String from, String event, String target, String... effects) {
      STEPS.put(from + "\u0000" + event, new Row(target, List.of(effects)));
      EVENT_TYPES.add(event);
      NEXT.computeIfAbsent(String.valueOf(from), k -> new java.util.ArrayList<>()).add(target);
    }

    static Row step(String status, String event) {
      return STEPS.get(status + "\u0000" + event);
    }

    static Row step(ObjectNode order, ObjectNode event) {
      return step(status(order), event.get("type").asText());
    }

    static String status(ObjectNode order) {
      JsonNode status = order.get("status");
      return status == null || status.isNull() ? null : status.asText();
    }

    /** Whether some status reachable from `status` (itself included) takes `event`. */
    static boolean canEverTake(String status, String event) {
      ArrayDeque<String> todo = new ArrayDeque<>();
      Set<String> seen = new HashSet<>();
      todo.add(String.valueOf(status));
      while (!todo.isEmpty()) {
        String at = todo.poll();
        if (!seen.add(at)) {
          continue;
        }
        if (STEPS.containsKey(at + "\u0000" + event)) {
          return true;
        }
        todo.addAll(NEXT.getOrDefault(at, List.of()));
      }
      return false;
    }
  }

  /** streams/core/machine.py's functions the peer needs, on the order as a JSON object. */
  static final class Machine {
    enum Verdict { DUPLICATE, APPLY, PARK, PARK_FULL, REJECT }

    record Taken(ObjectNode order, ObjectNode entry, Verdict verdict) {}

    static final int HISTORY = 50;
    static final int PARKED = 20;
    static final DateTimeFormatter MILLIS =
        DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);
    private static long stampedMs = -1;
    private static String stamped = "";

    static String rfc3339(double epoch) {
      long ms = Math.round(epoch * 1000);
      if (ms != stampedMs) {
        stamped = MILLIS.format(Instant.ofEpochMilli(ms));
        stampedMs = ms;
      }
      return stamped;
    }

    static ObjectNode newOrder(ObjectNode event, double now) {
      ObjectNode order = NODES.objectNode();
      order.set("order_id", event.get("order_id"));
      order.set("client_id", event.get("client_id"));
      order.putNull("status");
      order.put("version", 0);
      order.putArray("history");
      order.putArray("parked");
      order.putNull("retry");
      order.putObject("seen");
      order.putNull("failure");
      order.putObject("letters");
      order.put("created_at", rfc3339(now));
      order.put("updated_at", rfc3339(now));
      return order;
    }

    static Verdict classify(ObjectNode order, ObjectNode event, Lifecycle.Row row) {
      if (order.get("seen").has(event.get("event_id").asText())) {
        return Verdict.DUPLICATE;
      }
      if (row != null) {
        return Verdict.APPLY;
      }
      if (!Lifecycle.canEverTake(Lifecycle.status(order), event.get("type").asText())) {
        return Verdict.REJECT;
      }
      return order.get("parked").size() >= PARKED ? Verdict.PARK_FULL : Verdict.PARK;
    }

    static ObjectNode apply(ObjectNode order, ObjectNode event, Lifecycle.Row row, double now) {
      String before = Lifecycle.status(order);
      ((ObjectNode) order.get("seen")).put(event.get("event_id").asText(), now);
      record(order, event, row.target(), "applied", now, null);
      order.put("status", row.target());
      order.put("version", order.get("version").asInt() + 1);
      if (!row.target().equals(before)) {
        order.put("status_since", now);
        order.remove("stuck");
      }
      order.putNull("retry");
      order.putNull("failure");
      return order;
    }

    static ObjectNode park(ObjectNode order, ObjectNode event, double now) {
      ((ObjectNode) order.get("seen")).put(event.get("event_id").asText(), now);
      ObjectNode entry = ((ArrayNode) order.get("parked")).addObject();
      entry.set("event", event);
      entry.put("parked_at", now);
      entry.putNull("source");
      order.put("updated_at", rfc3339(now));
      return order;
    }

    static ObjectNode reject(ObjectNode order, ObjectNode event, double now, String reason) {
      ((ObjectNode) order.get("seen")).remove(event.get("event_id").asText());
      record(order, event, Lifecycle.status(order), "rejected", now, reason);
      return order;
    }

    static Taken takeParked(ObjectNode order) {
      ArrayNode parked = (ArrayNode) order.get("parked");
      for (int index = 0; index < parked.size(); index++) {
        ObjectNode entry = (ObjectNode) parked.get(index);
        ObjectNode event = (ObjectNode) entry.get("event");
        Verdict verdict;
        if (Lifecycle.step(order, event) != null) {
          verdict = Verdict.APPLY;
        } else if (!Lifecycle.canEverTake(Lifecycle.status(order), event.get("type").asText())) {
          verdict = Verdict.REJECT;
        } else {
          continue;
        }
        parked.remove(index);
        return new Taken(order, entry, verdict);
      }
      return null;
    }

    private static void record(ObjectNode order, ObjectNode event, String to, String outcome, double now,
                               String reason) {
      ObjectNode entry = NODES.objectNode();
      entry.set("event_id", event.get("event_id"));
      entry.set("type", event.get("type"));
      entry.set("from", order.get("status"));
      if (to == null) {
        entry.putNull("to");
      } else {
        entry.put("to", to);
      }
      entry.put("at", rfc3339(now));
      entry.put("outcome", outcome);
      if (reason != null) {
        entry.put("reason", reason);
      }
      ArrayNode history = (ArrayNode) order.get("history");
      history.add(entry);
      while (history.size() > HISTORY) {
        history.remove(0);
      }
      order.put("updated_at", entry.get("at").asText());
    }
  }
}
