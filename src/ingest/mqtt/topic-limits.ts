/**
 * Limits on a topic or topic filter: `maxTopicLength` in UTF-8 bytes (as on the wire) and
 * `maxTopicLevels` ('/'-separated levels). The frame guard checks a PUBLISH topic's length before
 * it is buffered; this covers what the guard cannot see alone (levels, will topics, filters).
 */
export interface TopicLimits {
  maxTopicLength: number;
  maxTopicLevels: number;
}

export interface TopicProblem {
  reason: 'topic_too_long' | 'topic_levels';
  detail: string;
}

export function topicProblem(topic: string, limits: TopicLimits): TopicProblem | undefined {
  const bytes = Buffer.byteLength(topic);
  if (bytes > limits.maxTopicLength) {
    return { reason: 'topic_too_long', detail: `topic of ${bytes} bytes; mqtt.maxTopicLength is ${limits.maxTopicLength}` };
  }
  let levels = 1;
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 47) levels += 1;
  if (levels > limits.maxTopicLevels) {
    return { reason: 'topic_levels', detail: `topic of ${levels} levels; mqtt.maxTopicLevels is ${limits.maxTopicLevels}` };
  }
  return undefined;
}
