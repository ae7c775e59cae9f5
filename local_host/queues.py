"""The local host's queue triggers: serve an app's queue-triggered functions from Azure Storage queues (Azurite).

The Functions host runs a listener per queue-triggered function; :class:`QueueListener` reproduces the
documented rules of the Storage Queues extension, read from host.json ``extensions.queues``
(:func:`shared.runs.queue_options`):

* messages are fetched ``batchSize`` at a time and run concurrently; another batch is fetched when the
  messages still running drop to ``newBatchThreshold`` (at most batchSize + newBatchThreshold at once);
* a fetched message is invisible to other listeners while its function runs: fetched with a lease
  (the host's is 10 minutes; ``LOCAL_QUEUE_LEASE_SECONDS``) renewed at half of it; a listener that dies
  leaves the message to reappear when its lease ends, with its dequeue count one higher;
* success deletes the message; a failure makes it visible again after ``visibilityTimeout``; a message
  that failed on its ``maxDequeueCount``-th dequeue, or is fetched with a dequeue count above it (its
  last try never finished), is moved to ``<queue>-poison`` (created when needed);
* an empty queue is polled with a randomised exponential back-off from 100 ms up to ``maxPollingInterval``
  (a queue that cannot be reached too: the poll itself does not retry);
* ``messageEncoding``: ``base64`` (the host's default) or ``none``; the function gets a
  ``QueueMessage`` with id, body, dequeue count, insertion and expiration times, pop receipt.

Not reproduced: dynamic concurrency, the per-function ``%setting%`` queue names, identity-based
connections (a connection string only: the setting the trigger's ``connection`` names, e.g.
``AzureWebJobsStorage``), and the scale controller (on the platform, instances are added by the queue's length).
"""
from __future__ import annotations

import base64
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from azure.functions.decorators.queue import QueueTrigger
from azure.functions.queue import QueueMessage  # what the worker hands a function (with its dequeue count)

from shared.publish import create_if_missing
from shared.runs import QueueOptions

log = logging.getLogger("sids.localhost.queues")

MIN_POLL_SECONDS = 0.1


def queue_functions(functions) -> list[tuple[str, str, str, Callable[[QueueMessage], None]]]:
    """(function name, queue name, connection setting, user function) of every queue-triggered function."""
    out = []
    for function in functions:
        trigger = function.get_trigger()
        if isinstance(trigger, QueueTrigger):
            out.append((function.get_function_name(), trigger.queue_name, trigger.connection or "AzureWebJobsStorage",
                        function.get_user_function()))
    return out


class QueueListener:
    """One queue-triggered function served from its queue, by the host's rules (module docstring)."""

    def __init__(self, name: str, queue_name: str, connection_string: str, handler: Callable[[QueueMessage], None],
                 options: QueueOptions, lease_seconds: float = 600.0):
        from azure.storage.queue import QueueClient

        self.name = name
        self.queue = QueueClient.from_connection_string(connection_string, queue_name)
        # Polls without the SDK's own retries: its default policy sleeps 15 s and more between tries when the
        # storage cannot be reached (e.g. Azurite still starting), which would hold the listener far past
        # maxPollingInterval; the loop backs off by the host's rule instead and polls again.
        self.poller = QueueClient.from_connection_string(connection_string, queue_name, retry_total=0)
        self.poison = QueueClient.from_connection_string(connection_string, f"{queue_name}-poison")
        self.handler = handler
        self.options = options
        self.lease = max(1, int(round(lease_seconds)))
        self.executor = ThreadPoolExecutor(max_workers=options.batch_size + max(0, options.new_batch_threshold),
                                           thread_name_prefix=f"queue-{queue_name}")
        self._running = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"listener-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, wait: float = 5.0) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(wait)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        delay = MIN_POLL_SECONDS
        while not self._stop.is_set():
            with self._changed:  # fetch when the messages still running are at most newBatchThreshold
                while self._running > self.options.new_batch_threshold and not self._stop.is_set():
                    self._changed.wait(1.0)
            if self._stop.is_set():
                return
            try:
                messages = self._fetch()
            except Exception as exc:  # storage down: keep trying, backed off
                log.warning("%s: cannot read queue %s (%s)", self.name, self.queue.queue_name, type(exc).__name__)
                messages = []
            if not messages:
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, max(MIN_POLL_SECONDS, self.options.max_polling_interval))
                continue
            delay = MIN_POLL_SECONDS
            for message in messages:
                if message.dequeue_count > self.options.max_dequeue_count:
                    self._to_poison(message, "its last try never finished")
                    continue
                with self._changed:
                    self._running += 1
                self.executor.submit(self._run, message)

    def _fetch(self) -> list:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            pages = self.poller.receive_messages(messages_per_page=self.options.batch_size,
                                                 visibility_timeout=self.lease).by_page()
            return list(next(pages, []))[:self.options.batch_size]
        except ResourceNotFoundError:
            return []  # the queue does not exist yet: nothing was ever sent

    # -- one message -------------------------------------------------------------------------------
    def _decode(self, content: str) -> bytes:
        if self.options.message_encoding == "base64":
            return base64.b64decode(content)
        return content.encode("utf-8")

    def _run(self, message) -> None:
        holder = {"receipt": message.pop_receipt}
        renewing = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(message, holder, renewing), daemon=True)
        renewer.start()
        started = time.perf_counter()
        log.info("%s: message %s started (dequeue %d)", self.name, message.id, message.dequeue_count)
        try:
            body = self._decode(message.content)
            msg = QueueMessage(id=message.id, body=body, dequeue_count=message.dequeue_count,
                                    expiration_time=message.expires_on, insertion_time=message.inserted_on,
                                    time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt)
            self.handler(msg)
        except Exception as exc:
            renewing.set()
            renewer.join()
            elapsed = time.perf_counter() - started
            if message.dequeue_count >= self.options.max_dequeue_count:
                log.error("%s: message %s failed on its last dequeue (%d) in %.2f s: %s: %s", self.name, message.id,
                          message.dequeue_count, elapsed, type(exc).__name__, exc)
                self._to_poison(message, f"{type(exc).__name__}: {exc}", holder["receipt"])
            else:
                log.warning("%s: message %s failed (dequeue %d of %d) in %.2f s: %s: %s; visible again in %g s",
                            self.name, message.id, message.dequeue_count, self.options.max_dequeue_count, elapsed,
                            type(exc).__name__, exc, self.options.visibility_timeout)
                self._release(message, holder["receipt"])
        else:
            renewing.set()
            renewer.join()
            self._delete(message, holder["receipt"])
            log.info("%s: message %s done in %.2f s (dequeue %d)", self.name, message.id,
                     time.perf_counter() - started, message.dequeue_count)
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def _renew(self, message, holder: dict, done: threading.Event) -> None:
        """Keep the message invisible while its function runs: renew the lease at half of it."""
        while not done.wait(self.lease / 2):
            try:
                updated = self.queue.update_message(message.id, holder["receipt"], visibility_timeout=self.lease)
                holder["receipt"] = updated.pop_receipt
            except Exception as exc:
                log.warning("%s: could not renew message %s (%s)", self.name, message.id, type(exc).__name__)

    def _delete(self, message, receipt: str) -> None:
        try:
            self.queue.delete_message(message.id, receipt)
        except Exception as exc:  # its lease ended meanwhile: it will be delivered again (at least once)
            log.warning("%s: could not delete message %s (%s)", self.name, message.id, type(exc).__name__)

    def _release(self, message, receipt: str) -> None:
        try:
            self.queue.update_message(message.id, receipt, visibility_timeout=int(self.options.visibility_timeout))
        except Exception as exc:
            log.warning("%s: could not release message %s (%s)", self.name, message.id, type(exc).__name__)

    def _to_poison(self, message, reason: str, receipt: str | None = None) -> None:
        create_if_missing(self.poison.create_queue)
        self.poison.send_message(message.content)  # the same text, in the same encoding
        self._delete(message, receipt or message.pop_receipt)
        log.error("%s: message %s moved to %s after %d dequeues (%s)", self.name, message.id,
                  self.poison.queue_name, message.dequeue_count, reason)


def listeners_for(functions, options: QueueOptions, lease_seconds: float = 600.0,
                  environ: dict | None = None) -> list[QueueListener]:
    """A listener per queue-triggered function whose connection setting is set (skipped, with a log line, otherwise)."""
    environ = os.environ if environ is None else environ
    out = []
    for name, queue_name, connection, handler in queue_functions(functions):
        connection_string = environ.get(connection)
        if not connection_string:
            log.warning("%s: not served (the queue trigger's connection setting %s is empty)", name, connection)
            continue
        out.append(QueueListener(name, queue_name, connection_string, handler, options, lease_seconds))
    return out
