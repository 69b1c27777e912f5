# Built by image/standin-base.sh on the debootstrap root file system it imports.
FROM streammuse-standin/rootfs:bookworm
# As in rayproject/ray: user ray, uid 1000, group users (gid 100), Python on PATH owned by it.
RUN useradd --create-home --uid 1000 --gid users --shell /bin/bash ray \
 && python3 -m venv /home/ray/anaconda3 && chown -R ray:users /home/ray/anaconda3
ENV PATH=/home/ray/anaconda3/bin:$PATH HOME=/home/ray
USER ray
WORKDIR /home/ray
# pip-cert.pem: the CA bundle of the machine that builds (a proxy's CA, where one re-signs).
COPY pip-cert.pem /home/ray/pip-cert.pem
ENV PIP_CERT=/home/ray/pip-cert.pem PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "ray[serve]==2.60.0"
