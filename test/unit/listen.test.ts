// Where the API listens is checked before anything starts, and a problem is named by its variable.
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { checkListen } from '../../src/lib/listen.ts';
import { freePort } from '../../src/embedded/local-services.ts';

const vars = { host: 'HOST', port: 'PORT' };

describe('checkListen', () => {
  it('names PORT when another process holds it', async () => {
    const taken = createServer();
    const port = await freePort();
    await new Promise<void>((r) => taken.listen(port, '127.0.0.1', r));
    try {
      const problem = await checkListen('127.0.0.1', port, vars);
      expect(problem?.message).toContain(
        `cannot listen on 127.0.0.1:${port} (HOST, PORT): another process uses PORT ${port}`,
      );
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
    // Free again: no problem, and the check leaves it free.
    expect(await checkListen('127.0.0.1', port, vars)).toBeUndefined();
    expect(await checkListen('127.0.0.1', port, vars)).toBeUndefined();
  });

  it('names HOST when it is not an address of this machine, or no name it resolves', async () => {
    const port = await freePort();
    expect((await checkListen('192.0.2.1', port, vars))?.message).toContain(
      'HOST "192.0.2.1" is not an address of this machine',
    );
    expect((await checkListen('no-such-host.invalid', port, vars))?.message).toMatch(
      /HOST "no-such-host\.invalid" (is not an address or a name|could not be resolved)/,
    );
  });

  it('port 0 (any free port) needs no check', async () => {
    expect(await checkListen('127.0.0.1', 0, vars)).toBeUndefined();
  });
});
