import { describe, expect, it } from 'vitest';
import { IllegalTransitionError, JOB_TRANSITIONS, assertTransition, canTransition } from './job-lifecycle.js';
import { JOB_STATES, TERMINAL_STATES, type JobState } from './job-status.js';

const LEGAL: [JobState, JobState][] = [
  ['QUEUED', 'RUNNING'],
  ['QUEUED', 'CANCELLED'],
  ['RUNNING', 'PAUSED'],
  ['RUNNING', 'SUCCEEDED'],
  ['RUNNING', 'FAILED'],
  ['RUNNING', 'CANCELLED'],
  ['PAUSED', 'RUNNING'],
  ['PAUSED', 'PAUSED'],
  ['PAUSED', 'FAILED'],
  ['PAUSED', 'CANCELLED'],
];

describe('job lifecycle transition table', () => {
  it('has a row for every state of the one exported list, and only those', () => {
    expect(Object.keys(JOB_TRANSITIONS).sort()).toEqual([...JOB_STATES].sort());
    for (const targets of Object.values(JOB_TRANSITIONS)) for (const t of targets) expect(JOB_STATES).toContain(t);
  });

  it.each(LEGAL)('allows %s → %s', (from, to) => {
    expect(canTransition(from, to)).toBe(true);
    expect(() => assertTransition('j', from, to)).not.toThrow();
  });

  it('allows nothing else: every other pair throws IllegalTransitionError with a stable code', () => {
    const legal = new Set(LEGAL.map(([a, b]) => `${a}>${b}`));
    let illegal = 0;
    for (const from of JOB_STATES)
      for (const to of JOB_STATES) {
        if (legal.has(`${from}>${to}`)) continue;
        illegal++;
        expect(canTransition(from, to), `${from} → ${to}`).toBe(false);
        const err = (() => {
          try {
            assertTransition('job-1', from, to);
          } catch (e) {
            return e;
          }
          return undefined;
        })();
        expect(err, `${from} → ${to}`).toBeInstanceOf(IllegalTransitionError);
        expect(err).toMatchObject({ code: 'ILLEGAL_TRANSITION', from, to, jobId: 'job-1' });
      }
    expect(illegal).toBe(JOB_STATES.length ** 2 - LEGAL.length);
  });

  it.each([
    ['SUCCEEDED', 'RUNNING'],
    ['CANCELLED', 'RUNNING'],
    ['FAILED', 'PAUSED'],
    ['QUEUED', 'SUCCEEDED'],
    ['QUEUED', 'PAUSED'],
    ['RUNNING', 'QUEUED'],
    ['RUNNING', 'RUNNING'],
  ] as [JobState, JobState][])('refuses %s → %s and says what is allowed', (from, to) => {
    expect(() => assertTransition('j', from, to)).toThrow(
      new RegExp(`illegal transition ${from} → ${to} \\(allowed from ${from}: `),
    );
  });

  it('terminal states move nowhere', () => {
    for (const s of TERMINAL_STATES) expect(JOB_TRANSITIONS[s]).toEqual([]);
  });
});
