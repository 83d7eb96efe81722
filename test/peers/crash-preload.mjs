// Loaded into a gateway process with NODE_OPTIONS=--import by test/integration/crash-exit.test.ts.
// On SIGUSR2 (sent once the gateway has started) it makes the running process fail the way
// UPLINK_TEST_CRASH says: an async function that throws with nobody awaiting it, a throw from a
// callback of the event loop, or a promise rejected with something that is not an Error.
import process from 'node:process';
import { setImmediate } from 'node:timers';

process.on('SIGUSR2', () => {
  switch (process.env.UPLINK_TEST_CRASH) {
    case 'rejection':
      void (async () => {
        throw new Error('injected rejection');
      })();
      break;
    case 'exception':
      setImmediate(() => {
        throw new Error('injected exception');
      });
      break;
    case 'rejection-not-error':
      void Promise.reject('injected reason');
      break;
    default:
      throw new Error(`crash-preload: unknown UPLINK_TEST_CRASH '${process.env.UPLINK_TEST_CRASH}'`);
  }
});
