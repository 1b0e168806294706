// The blastgate CLI: a client of the REST API (and of the CI intake queue) for pipelines and
// operators. Every command ends with an exit code from exit-codes.ts (README table); --json makes
// stdout one JSON document and errors one JSON object on stderr.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { EXIT } from './exit-codes.ts';
import { reportError, writeWarning } from './output.ts';
import { registerOperationCommands } from './commands/operations.ts';
import { registerControlCommands } from './commands/controls.ts';
import { registerAdminCommands } from './commands/admin.ts';
import { registerWebhookCommands } from './commands/webhooks.ts';
import { registerListCommand } from './commands/list.ts';
import { DEFAULT_URL, misspeltCliSettings } from './config.ts';

/** Usage errors throw (and exit 2) instead of exiting 1 from inside commander. */
class CliCommand extends Command {
  constructor(name?: string) {
    super(name);
    this.exitOverride();
  }
  override createCommand(name?: string): CliCommand {
    return new CliCommand(name);
  }
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

export function buildProgram(): Command {
  const program = new CliCommand('blastgate')
    .description('Blastgate from the command line: plan, submit, approve, start and follow deletes')
    .version(version())
    .option('--url <url>', `API address (default BLASTGATE_URL, else ${DEFAULT_URL})`)
    .option('--token <token>', 'API token (default BLASTGATE_TOKEN); prefer --token-file: argv is visible to others')
    .option('--token-file <file>', 'read the API token from this file (default BLASTGATE_TOKEN_FILE)')
    .option('--json', 'machine-readable output: one JSON document on stdout, errors as JSON on stderr')
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      '\nExit codes: 0 completed/ok · 10 plan rejected · 11 halted, rolled back, completed with failures, cancelled, failed, expired · 12 paused · 13 timed out waiting · 2 usage error · 1 other error',
    );
  registerOperationCommands(program);
  registerListCommand(program);
  registerControlCommands(program);
  registerAdminCommands(program);
  registerWebhookCommands(program);
  return program;
}

/**
 * `blastgate status … | head -1`: the reader closes the pipe, and the next write fails with EPIPE,
 * which node raises as an uncaught error (a stack trace, exit 1). Nobody reads any more output, so
 * the CLI ends there, with the exit code it had so far.
 */
function endQuietlyOnClosedPipe() {
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(process.exitCode ?? EXIT.ok);
    });
}

export async function main(argv: string[] = process.argv): Promise<void> {
  endQuietlyOnClosedPipe();
  const json = argv.includes('--json');
  // On stderr only: stdout is what pipelines parse. With --json, one JSON object per line.
  for (const w of misspeltCliSettings(process.env)) writeWarning(json, { code: 'UNKNOWN_SETTING', ...w });
  if (process.env.BLASTGATE_DEBUG_RSS)
    process.once('exit', () => process.stderr.write(`blastgate-debug maxRssKiB=${process.resourceUsage().maxRSS}\n`));
  const program = buildProgram();
  // --json: commander's own error text is replaced by one JSON object (below), on every command.
  if (json) {
    const quiet = (c: Command) => {
      c.configureOutput({ writeErr: () => undefined, outputError: () => undefined });
      c.commands.forEach(quiet);
    };
    quiet(program);
  }
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        process.exitCode = EXIT.ok;
        return;
      }
      if (json)
        process.stderr.write(
          JSON.stringify({ error: { code: 'USAGE', message: err.message.replace(/^error: /, '') }, exitCode: 2 }) +
            '\n',
        );
      process.exitCode = EXIT.usage;
      return;
    }
    process.exitCode = reportError(err, json);
  }
}
