#!/usr/bin/env bash
# Builds ActiveMQ Classic's AMQP 1.0 module for Debian's `activemq` 5.17, which ships without it
# (activemq-amqp needs Qpid Proton-J, which Debian does not package). The tests' ActiveMQ peer
# (test/peers/activemq.ts) loads the jars from the folder this prints ($UPLINK_ACTIVEMQ_AMQP_LIB).
#
# usage: scripts/peers/activemq-amqp.sh ACTIVEMQ_GIT PROTON_J_GIT [OUT]
#   ACTIVEMQ_GIT   a git directory of Apache ActiveMQ with the tag activemq-5.17.2
#   PROTON_J_GIT   a git directory of Apache Qpid Proton-J with the tag 0.33.10 (what 5.17.2's pom names)
#   OUT            default ${UPLINK_PEER_CACHE:-/var/cache/uplink-peers}/activemq-amqp-5.17.2
# Needs a JDK (javac, jar: Debian's default-jdk-headless) and Debian's activemq installed.
set -euo pipefail
activemq_git="$1"; proton_git="$2"
out="${3:-${UPLINK_PEER_CACHE:-/var/cache/uplink-peers}/activemq-amqp-5.17.2}"
if [ -f "$out/activemq-amqp-5.17.2.jar" ] && [ -f "$out/proton-j-0.33.10.jar" ]; then echo "$out"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/proton" "$work/amqp"
git --git-dir="$proton_git" archive 0.33.10 proton-j/src/main | tar -x -C "$work/src"
git --git-dir="$activemq_git" archive activemq-5.17.2 activemq-amqp/src/main | tar -x -C "$work/src"
find "$work/src/proton-j" -name '*.java' > "$work/proton.txt"
javac -nowarn --release 11 -d "$work/proton" @"$work/proton.txt" >&2
jar cf "$work/proton-j-0.33.10.jar" -C "$work/proton" .
# The WebSocket transports need activemq-http, which Debian does not build either: left out.
find "$work/src/activemq-amqp" -name '*.java' ! -name 'AmqpWS*' > "$work/amqp.txt"
cp="/usr/share/java/activemq-broker.jar:/usr/share/java/activemq-client.jar:/usr/share/java/hawtbuf.jar"
cp="$cp:/usr/share/java/slf4j-api.jar:/usr/share/java/geronimo-jms_1.1_spec.jar:$work/proton-j-0.33.10.jar"
javac -nowarn --release 11 -cp "$cp" -d "$work/amqp" @"$work/amqp.txt" >&2
cp -r "$work/src/activemq-amqp/src/main/resources/." "$work/amqp/"
rm -f "$work/amqp/META-INF/services/org/apache/activemq/transport/amqp+ws" \
  "$work/amqp/META-INF/services/org/apache/activemq/transport/amqp+wss"
jar cf "$work/activemq-amqp-5.17.2.jar" -C "$work/amqp" .
mkdir -p "$out"
cp "$work/activemq-amqp-5.17.2.jar" "$work/proton-j-0.33.10.jar" "$out/"
echo "$out"
