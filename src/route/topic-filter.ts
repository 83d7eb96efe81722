/**
 * MQTT topic filters (MQTT 3.1.1 section 4.7): `+` matches exactly one level, `#` the level it
 * stands on and everything below it. Topics starting with `$` are not matched by a filter that
 * starts with a wildcard.
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}
