import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { JobState, JobStatus } from '@gradfleet/core';

export interface StoredJob {
  seq: number;
  status: JobStatus;
}

/**
 * Durable job records in SQLite (`<dataDir>/gradfleet.db`, WAL mode): each job's status
 * snapshot (spec, progress, per-epoch results, replica report), every state transition
 * with its time and reason, and a log of lines per job. Written at transitions, epoch ends
 * and checkpoints, never per step.
 */
export class JobStore {
  private readonly db: Database.Database;

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new Database(join(dataDir, 'gradfleet.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL,
        status TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS events (
        job_id TEXT NOT NULL,
        time TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS logs (
        job_id TEXT NOT NULL,
        time TEXT NOT NULL,
        line TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS events_job ON events (job_id);
      CREATE INDEX IF NOT EXISTS logs_job ON logs (job_id);
    `);
  }

  /** Next submission sequence number (FIFO order survives restarts). */
  nextSeq(): number {
    const row = this.db.prepare('SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM jobs').get() as { n: number };
    return row.n;
  }

  save(seq: number, status: JobStatus): void {
    if (!this.db.open) return;
    this.db
      .prepare(
        'INSERT INTO jobs (id, seq, state, status, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state, status = excluded.status, updated_at = excluded.updated_at',
      )
      .run(status.id, seq, status.state, JSON.stringify(status), new Date().toISOString());
  }

  recordEvent(jobId: string, time: string, state: JobState, reason: string): void {
    if (!this.db.open) return;
    this.db
      .prepare('INSERT INTO events (job_id, time, state, reason) VALUES (?, ?, ?, ?)')
      .run(jobId, time, state, reason);
  }

  log(jobId: string, line: string): void {
    if (!this.db.open) return;
    this.db
      .prepare('INSERT INTO logs (job_id, time, line) VALUES (?, ?, ?)')
      .run(jobId, new Date().toISOString(), line);
  }

  /** The job's log lines after `afterRow`, at most `limit` of them (oldest first). */
  logs(jobId: string, afterRow = 0, limit = -1): { row: number; time: string; line: string }[] {
    return this.db
      .prepare('SELECT rowid AS row, time, line FROM logs WHERE job_id = ? AND rowid > ? ORDER BY rowid LIMIT ?')
      .all(jobId, afterRow, limit) as { row: number; time: string; line: string }[];
  }

  events(jobId: string): { time: string; state: JobState; reason: string }[] {
    return this.db.prepare('SELECT time, state, reason FROM events WHERE job_id = ? ORDER BY rowid').all(jobId) as {
      time: string;
      state: JobState;
      reason: string;
    }[];
  }

  all(): StoredJob[] {
    return (
      this.db.prepare('SELECT seq, status FROM jobs ORDER BY seq').all() as { seq: number; status: string }[]
    ).map((r) => ({ seq: r.seq, status: JSON.parse(r.status) as JobStatus }));
  }

  delete(jobId: string): void {
    this.db.transaction(() => {
      for (const t of ['jobs', 'events', 'logs'])
        this.db.prepare(`DELETE FROM ${t} WHERE ${t === 'jobs' ? 'id' : 'job_id'} = ?`).run(jobId);
    })();
  }

  close(): void {
    this.db.close();
  }
}
