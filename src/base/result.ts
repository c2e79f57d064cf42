// Models: the kernel's errno convention (include/uapi/asm-generic/errno-base.h, errno.h) as a Result type.
// A modeled kernel failure is a value, never an exception: { ok: false, errno: 'EINVAL' }.

/** The kernel errno names the model returns. */
export type Errno =
  | 'EPERM' | 'ENOENT' | 'EIO' | 'E2BIG' | 'EAGAIN' | 'ENOMEM' | 'EFAULT' | 'EBUSY' | 'EEXIST'
  | 'ENODEV' | 'EINVAL' | 'ENOSPC' | 'ERANGE' | 'EOPNOTSUPP' | 'EOVERFLOW' | 'EREMOTEIO'
  | 'ENXIO' | 'ETIMEDOUT' | 'EACCES' | 'EADDRINUSE' | 'EMSGSIZE';

/** Negative errno values as the kernel has them (x86-64 / asm-generic numbering). */
export const ERRNO_VALUES: Readonly<Record<Errno, number>> = {
  EPERM: 1, ENOENT: 2, EIO: 5, ENXIO: 6, E2BIG: 7, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14,
  EBUSY: 16, EEXIST: 17, ENODEV: 19, EINVAL: 22, ENOSPC: 28, ERANGE: 34, EOVERFLOW: 75,
  EOPNOTSUPP: 95, ETIMEDOUT: 110, EREMOTEIO: 121, EADDRINUSE: 98, EMSGSIZE: 90,
};

export type Ok<T> = { readonly ok: true; readonly value: T };
export type Err = { readonly ok: false; readonly errno: Errno; readonly message?: string };
export type Result<T> = Ok<T> | Err;

export function ok<T>(value: T): Ok<T>;
export function ok(): Ok<void>;
export function ok<T>(value?: T): Ok<T> {
  return { ok: true, value: value as T };
}

/** A failure; `message` is an optional human explanation (what was wrong, which value). */
export function err(errno: Errno, message?: string): Err {
  return message === undefined ? { ok: false, errno } : { ok: false, errno, message };
}

/** Unwraps a Result in code that has already established success (tests, examples); throws otherwise. */
export function unwrap<T>(r: Result<T>, what = 'result'): T {
  if (r.ok) return r.value;
  throw new Error(`${what} failed with ${r.errno}${r.message ? `: ${r.message}` : ''}`);
}
