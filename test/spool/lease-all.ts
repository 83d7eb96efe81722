/**
 * For tests that read back what a component stored: every reading of an address, including those
 * committed a moment ago. A committed reading becomes leasable only once its fsync came back
 * (invariant 7 of sqlite-spool.ts), so the depth can count a reading a lease does not return yet.
 */
import type { Spool, SpooledReading } from '../../src/spool/interface.js';

export async function leaseAll(spool: Pick<Spool, 'lease' | 'addresses'>, address: string, timeoutMs = 10_000): Promise<SpooledReading[]> {
  const out: SpooledReading[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    out.push(...await spool.lease(address, 1_000_000));
    // addresses(): readings not in flight, durable or not yet.
    if (!spool.addresses().includes(address) || Date.now() > deadline) return out;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
