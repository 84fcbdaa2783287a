import { describe, expect, it } from 'vitest';
import { createLogger } from '@gradfleet/core';
import { COORDINATOR_DEFAULTS, compileCoordinatorOptions } from './coordinator-options.js';

const logger = createLogger('test').child({ level: 'silent' });

describe('compileCoordinatorOptions', () => {
  it('fills every default once; given values (even falsy ones) win; undefined does not', () => {
    const o = compileCoordinatorOptions({ logger, port: 0, insecure: undefined, maxConnections: 3 });
    expect(o.port).toBe(0);
    expect(o.maxConnections).toBe(3);
    expect(o.insecure).toBe(COORDINATOR_DEFAULTS.insecure);
    expect(o.host).toBe('127.0.0.1');
    expect(o.maxMessagesPerSecond).toBe(COORDINATOR_DEFAULTS.maxMessagesPerSecond);
    expect(o.reducerThreads).toBe(0); // the data plane is opt-in for now
    expect(compileCoordinatorOptions({ logger, reducerThreads: 3 }).reducerThreads).toBe(3);
  });

  it('is frozen: read everywhere, changed nowhere', () => {
    const o = compileCoordinatorOptions({ logger });
    expect(Object.isFrozen(o)).toBe(true);
  });
});
