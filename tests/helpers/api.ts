import { expect } from 'vitest';
import { ApiError } from '@gradfleet/core';

/** The ApiError a client call must reject with (fails the test if it resolves or throws something else). */
export async function refusal(p: Promise<unknown>): Promise<ApiError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiError);
  return err as ApiError;
}
