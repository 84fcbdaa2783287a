import { execFileSync } from 'node:child_process';

/** Why network-namespace tests cannot run here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces';
  for (const [cmd, args] of [
    ['ip', ['netns', 'list']],
    ['iptables', ['--version']],
  ] as const) {
    try {
      execFileSync(cmd, [...args], { stdio: 'ignore' });
    } catch {
      return `\`${cmd}\` is missing (apt-get install iproute2 iptables)`;
    }
  }
  return undefined;
}

const sh = (args: string[]) => execFileSync(args[0]!, args.slice(1), { stdio: 'pipe' });

/**
 * A test host: a network namespace joined to this one by a veth pair, host side
 * `10.213.<k>.1/30`, namespace side `10.213.<k>.2/30`. Only these two addresses are used.
 */
export class TestHost {
  readonly ns: string;
  readonly hostIp: string;
  private readonly veth: string;

  constructor(readonly k: number) {
    const tag = `${process.pid % 10000}${k}`;
    this.ns = `gf-${tag}`;
    this.veth = `gfv${tag}`;
    this.hostIp = `10.213.${k}.1`;
    sh(['ip', 'netns', 'add', this.ns]);
    sh(['ip', 'link', 'add', this.veth, 'type', 'veth', 'peer', 'name', `${this.veth}p`]);
    sh(['ip', 'link', 'set', `${this.veth}p`, 'netns', this.ns]);
    sh(['ip', 'addr', 'add', `${this.hostIp}/30`, 'dev', this.veth]);
    sh(['ip', 'link', 'set', this.veth, 'up']);
    sh(['ip', 'netns', 'exec', this.ns, 'ip', 'addr', 'add', `10.213.${k}.2/30`, 'dev', `${this.veth}p`]);
    sh(['ip', 'netns', 'exec', this.ns, 'ip', 'link', 'set', `${this.veth}p`, 'up']);
    sh(['ip', 'netns', 'exec', this.ns, 'ip', 'link', 'set', 'lo', 'up']);
  }

  /** Command prefix running a program inside the namespace. */
  exec(cmd: string[]): string[] {
    return ['ip', 'netns', 'exec', this.ns, ...cmd];
  }

  /** Drops every packet in and out of the host, without closing any socket. */
  cut(): void {
    sh(this.exec(['iptables', '-A', 'INPUT', '-j', 'DROP']));
    sh(this.exec(['iptables', '-A', 'OUTPUT', '-j', 'DROP']));
  }

  restore(): void {
    sh(this.exec(['iptables', '-F']));
  }

  destroy(): void {
    try {
      sh(['ip', 'netns', 'del', this.ns]);
    } catch {
      // already gone
    }
    try {
      sh(['ip', 'link', 'del', this.veth]);
    } catch {
      // removed with the namespace
    }
  }
}
