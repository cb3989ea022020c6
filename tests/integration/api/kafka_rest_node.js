// Drive a broker with Confluent's Node.js REST Proxy client (npm "kafka-rest", REST Proxy v1).
//
//   node kafka_rest_node.js BROKER_URL TOPIC GROUP
//
// Lists brokers and topics, produces through the topic and a partition, reads by offset, then
// consumes the topic in a consumer group, commits and shuts the instance down. Prints one JSON
// document of what the client saw; exits 1 (with the error) on any client error.
"use strict";

const KafkaRest = require("kafka-rest");

const [url, topicName, groupName] = process.argv.slice(2);
const kafka = new KafkaRest({ url: url, timeout: 30000 });
const out = {};
let current = "start";
let finished = false;
// A callback the client never calls leaves nothing to wait for: node would exit 0 silently.
process.on("exit", (code) => {
    if (!finished && code === 0) {
        console.error(`${current}: the client never called back`);
        process.exitCode = 2;
    }
});

function fail(step, err) {
    console.error(`${step}: ${err && err.stack ? err.stack : JSON.stringify(err)}`);
    process.exit(1);
}

function step(name, fn) {
    current = name;
    return new Promise((resolve) => {
        fn((err, result) => (err ? fail(name, err) : resolve(result)));
    });
}

async function main() {
    const brokers = await step("brokers", (cb) => kafka.brokers.list(cb));
    out.brokers = brokers.map((b) => b.id);
    const topics = await step("topics", (cb) => kafka.topics.list(cb));
    out.topics = topics.map((t) => t.name);
    const topic = await step("topic", (cb) => kafka.topics.get(topicName, cb));
    out.partitions = topic.raw.partitions.length;

    const produced = await step("produce", (cb) =>
        kafka.topic(topicName).produce(["m1", "m2"], { key: "k3", value: "m3", partition: 1 }, cb)
    );
    out.produced = produced.offsets.map((o) => [o.partition, o.offset, o.error_code]);
    const toPartition = await step("produce-partition", (cb) =>
        kafka.topicPartition(topicName, 0).produce("m4", cb)
    );
    out.produced.push(...toPartition.offsets.map((o) => [0, o.offset, o.error_code]));

    const messages = await step("messages", (cb) =>
        kafka.topicPartition(topicName, 1).messages({ offset: 0, count: 10 }, cb)
    );
    out.messages = messages.map((m) => [
        m.key === null ? null : Buffer.from(m.key, "base64").toString(),
        Buffer.from(m.value, "base64").toString(),
        m.offset,
    ]);

    const instance = await step("join", (cb) =>
        kafka.consumer(groupName).join(
            { format: "binary", "auto.offset.reset": "smallest", "auto.commit.enable": "false" },
            cb
        )
    );
    current = "consume";
    out.consumed = await new Promise((resolve) => {
        const seen = [];
        const stream = instance.subscribe(topicName);
        stream.on("error", (err) => fail("consume", err));
        stream.on("data", (msgs) => {
            for (const m of msgs) {
                seen.push([m.partition, m.offset, m.value.toString()]);
            }
            if (seen.length >= 4) {
                resolve(seen);
            }
        });
    });
    const committed = await step("commit", (cb) => instance.commit(cb));
    out.committed = committed.map((c) => [c.topic, c.partition, c.committed]);
    await step("shutdown", (cb) => instance.shutdown(cb)); // ends the stream, then DELETE
    finished = true;
    console.log(JSON.stringify(out));
}

main().catch((err) => fail("main", err));
