import { describe, expect, it } from 'vitest';
import { BrowserGuard, hostName } from './browser-guard.js';

describe('hostName', () => {
  it.each([
    ['example.com:7070', 'example.com'],
    ['Example.COM', 'example.com'],
    ['127.0.0.1:80', '127.0.0.1'],
    ['[::1]:7070', '::1'],
    ['[fe80::1]', 'fe80::1'],
    ['::1', '::1'],
  ])('%s → %s', (header, name) => expect(hostName(header)).toBe(name));
});

describe('BrowserGuard', () => {
  const guard = new BrowserGuard({
    listenHost: '0.0.0.0',
    publicHosts: ['gradfleet.example'],
    allowOrigins: ['https://dash.example/'],
  });

  it.each(['127.0.0.1:7070', '10.1.2.3', '[::1]:7070', 'localhost:7070', 'gradfleet.example:443', 'GRADFLEET.example'])(
    'accepts Host %s',
    (h) => expect(guard.allowsHost(h)).toBe(true),
  );

  it.each([undefined, '', 'attacker.example', 'gradfleet.example.attacker.example', 'localhost.attacker.example:7070'])(
    'refuses Host %s',
    (h) => expect(guard.allowsHost(h)).toBe(false),
  );

  it('lets requests without Origin through, and only the named origins with one', () => {
    expect(guard.allowsOrigin(undefined)).toBe(true);
    expect(guard.allowsOrigin('https://dash.example')).toBe(true);
    expect(guard.allowsOrigin('https://attacker.example')).toBe(false);
    expect(guard.allowsOrigin('null')).toBe(false);
  });
});
