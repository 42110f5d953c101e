// How the controller speaks to an image's registry (tag resolution, the protection's registry checks).
import { parseReference } from '../registry/index.ts';

/**
 * A registry on the loopback interface (localhost, 127.0.0.0/8, [::1]) is spoken to in plain HTTP, as containerd's CRI
 * does by default (its resolver matches localhost for plain HTTP): the kubelet pulls from such a registry, so tote must be
 * able to ask it for a tag too. Any other registry is HTTPS.
 */
export function isLoopbackRegistry(image: string): boolean {
  let host: string;
  try {
    host = parseReference(image).domain.replace(/:\d+$/, '');
  } catch {
    return false;
  }
  return host === 'localhost' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}
