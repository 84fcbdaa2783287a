import { describe, expect, it } from 'vitest';
import { isBlockedAddress } from './address-policy.js';

describe('isBlockedAddress', () => {
  it.each([
    '127.0.0.1',
    '127.1.2.3',
    '10.0.0.1',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '239.255.255.250',
    '255.255.255.255',
    '::',
    '::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '64:ff9b::a9fe:a9fe',
    'fd00::1',
    'fe80::1',
    'ff02::1',
    'not-an-address',
  ])('refuses %s', (a) => expect(isBlockedAddress(a)).toBe(true));

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '192.169.0.1', '2606:4700:4700::1111', '2001:db8::1'])(
    'allows %s',
    (a) => expect(isBlockedAddress(a)).toBe(false),
  );
});
