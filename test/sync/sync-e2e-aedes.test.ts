// The sync suite end to end on the single-machine default: the ledger with its embedded aedes broker
// and a SQLite file, one consumer (test/sync/sync-cases.ts).
import t from 'tap';
import { syncSuite } from './sync-cases.js';

syncSuite(t, 'aedes-sqlite');
