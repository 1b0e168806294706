// The one token generator, and the hash a secret is stored and looked up by.
import { createHash, randomBytes } from 'node:crypto';

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');
export const generateToken = () => `bg_${randomBytes(24).toString('base64url')}`;
